//! Response parsers (rust/wire/): any bytes, any wire. A body is parsed or refused with a typed
//! error; what parses keeps the parsers' invariants (logprobs and top logprobs 1:1 with ids, or,
//! on the chat wire without ids, top logprobs 1:1 with the logprobs; NaN exactly where the
//! server sent null; the routed_experts span pointing at its own raw JSON; the chat wire's
//! as-sent tool calls 1:1 with the parsed ones).
#![no_main]

use fasttito::wire::{parse_response, ParseOptions, Wire, IDS_NOT_SENT};
use fasttito::ErrorKind;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else { return };
    let wire = Wire::ALL[usize::from(selector) % Wire::ALL.len()];
    // Mostly the default depth; sometimes a shallow limit so the depth check itself is fuzzed.
    let max_depth = if selector >= 0xF0 { usize::from(selector & 0x0F) } else { 64 };
    let opts = ParseOptions { max_body_bytes: 1 << 20, max_depth };
    match parse_response(body, wire, &opts) {
        // an engine's abort (SGLang finish_reason "abort") is the one other refusal
        Err(e) => assert!(
            e.kind() == ErrorKind::Parse || (wire == Wire::Sglang && e.kind() == ErrorKind::Abort),
            "{wire}: {e}"
        ),
        Ok(p) => {
            // a plain OpenAI answer (chat wire) sends no ids: its logprobs are one per token
            let ids_sent = p.completion_ids_from != IDS_NOT_SENT;
            assert!(ids_sent || (wire == Wire::Chat && p.completion_ids.is_empty()), "{wire}");
            let tokens = if ids_sent {
                p.completion_ids.len()
            } else {
                p.completion_logprobs.as_ref().map_or(0, Vec::len)
            };
            assert!(
                p.tool_calls_as_sent.is_empty() || p.tool_calls_as_sent.len() == p.tool_calls.len(),
                "{wire}: as-sent tool calls out of step"
            );
            if let Some(lp) = &p.completion_logprobs {
                assert_eq!(lp.len(), tokens, "{wire}: logprobs out of step with ids");
                let nan = lp.iter().filter(|x| x.is_nan()).count();
                assert_eq!(nan, p.null_logprobs, "{wire}: null logprobs miscounted");
            } else {
                assert_eq!(p.null_logprobs, 0);
            }
            if let Some(top) = &p.completion_top_logprobs {
                assert_eq!(top.tokens(), tokens, "{wire}: top logprobs out of step");
                assert_eq!(top.ids.len(), top.logprobs.len(), "{wire}: top ids and logprobs");
            }
            match (&p.routed_experts, &p.routed_experts_span) {
                (Some(raw), Some(span)) => assert_eq!(&body[span.clone()], raw.get().as_bytes()),
                (None, None) => {}
                (raw, span) => panic!("{wire}: routed_experts {raw:?} with span {span:?}"),
            }
        }
    }
});
